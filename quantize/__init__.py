"""edgecodec.quantize."""
