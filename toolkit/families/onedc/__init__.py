"""OneDC (github.com/onedc-codec/onedc): a one-step diffusion codec with an FSQ hyper code, a four-pass
Gaussian-conditional y code whose priors are networks, an SD-1.5 UNet and an SD VAE decoder.

The family's registry entries (zoo.FAMILIES). The model needs diffusers (`edgecodec[onedc]`), so MODEL is
imported on first use: listing the zoo's configs does not.
"""

from __future__ import annotations

from .config import SD15_UNET, SD21_VAE, OneDCConfig
from .nets import CodecWidths

CONFIG = OneDCConfig
ONEDC = OneDCConfig(name="onedc", codec=CodecWidths.released().to_dict(), unet=dict(SD15_UNET), vae=dict(SD21_VAE))
CONFIGS = {"onedc": ONEDC}


def __getattr__(name: str):
    if name == "MODEL":
        from .model import OneDCModel

        return OneDCModel
    raise AttributeError(name)


__all__ = ["CONFIG", "CONFIGS", "MODEL", "ONEDC"]
