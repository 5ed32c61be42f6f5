"""What the benchmark ran on: CPU model and ISA flags, cores, memory, OS, library versions, GPUs.

Read from /proc, /sys and package metadata only: nothing here imports torch or a runtime, so
describing the machine costs nothing and cannot change what is measured afterwards.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

# x86 flags that decide which kernels the runtimes pick (VNNI / AMX for INT8, AVX-512 for fp32).
ISA_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
             "amx_tile", "amx_bf16", "amx_int8")
ARM_FLAGS = ("asimd", "asimddp", "asimdhp", "sve", "i8mm", "bf16")
LIBRARIES = ("numpy", "torch", "onnxruntime", "openvino")


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = "", set()
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    if not model:  # ARM boards (Jetson) name the board in the device tree, not in cpuinfo
        model = _read("/proc/device-tree/model").strip("\x00\n ") or platform.processor() or platform.machine()
    return model, flags


def _memory_gb() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def library_versions(names=LIBRARIES) -> dict[str, str | None]:
    """Installed versions by import name (via package metadata, without importing the library);
    None when it cannot be imported here."""
    try:
        dists = importlib.metadata.packages_distributions()
    except Exception:  # noqa: BLE001 - broken metadata must not stop a benchmark
        dists = {}
    out: dict[str, str | None] = {}
    for name in names:
        if importlib.util.find_spec(name) is None:
            out[name] = None
            continue
        version = None
        for dist in dists.get(name, [name]):  # e.g. onnxruntime is installed as onnxruntime-gpu
            try:
                version = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        out[name] = version or "unknown"
    return out


def gpu_names() -> list[str]:
    """NVIDIA GPUs from nvidia-smi (or the driver's /proc entries, or a Jetson's device tree) and Intel
    GPUs from /sys/class/drm; [] when none is found."""
    names: list[str] = []
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            res = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=10)
            names += [n.strip() for n in res.stdout.splitlines() if n.strip()] if res.returncode == 0 else []
        except (OSError, subprocess.SubprocessError):
            pass
    if not names:
        for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
            for line in _read(str(info)).splitlines():
                if line.startswith("Model:"):
                    names.append(line.split(":", 1)[1].strip())
    board = _read("/proc/device-tree/model").strip("\x00\n ")
    if not names and "jetson" in board.lower():
        names.append(f"{board} (integrated GPU)")
    for card in sorted(Path("/sys/class/drm").glob("card[0-9]*")):
        if "-" in card.name:  # connectors (card0-HDMI-A-1) repeat their card
            continue
        if _read(str(card / "device/vendor")).strip() == "0x8086":
            names.append(f"Intel GPU (PCI device {_read(str(card / 'device/device')).strip()})")
    return names


def machine_info() -> dict:
    model, flags = _cpuinfo()
    isa = {f: f in flags for f in (ARM_FLAGS if platform.machine().lower() in ("aarch64", "arm64") else ISA_FLAGS)}
    if "amx_tile" in isa:
        isa["amx"] = isa["amx_tile"]
    return {
        "cpu": model,
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "isa": isa,
        "memory_gb": _memory_gb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "versions": library_versions(),
        "gpus": gpu_names(),
        "load_avg_at_start": _load_avg(),
    }


def _load_avg() -> list[float] | None:
    """1/5/15-minute load averages when the bench starts: other work on the machine skews latency."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def contention_warning(m: dict) -> str | None:
    """A sentence when the machine was busy with other work as the bench started, else None."""
    load, cores = m.get("load_avg_at_start"), m.get("usable_cores") or m.get("logical_cores") or 1
    if load and load[0] > 0.5 * cores:
        return (f"the machine was busy when the bench started (1-minute load {load[0]:.1f} on {cores} cores): "
                f"other processes shared the CPU, so these timings are contended; CPU runtimes whose threads "
                f"spin-wait (torch eager especially) suffer most")
    return None


def machine_line(m: dict) -> str:
    """One line for a report: CPU, cores, ISA, memory, GPUs, OS, versions."""
    isa = ", ".join(k for k, v in m.get("isa", {}).items() if v and not k.startswith("amx_"))
    isa = isa or "no listed ISA extensions"
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items() if v)
    gpus = "; ".join(m.get("gpus") or []) or "no GPU"
    return (f"{m.get('cpu')} ({m.get('logical_cores')} logical cores; {isa}), {m.get('memory_gb')} GB RAM, "
            f"{gpus}; {m.get('os')}, Python {m.get('python')}; {versions}")
