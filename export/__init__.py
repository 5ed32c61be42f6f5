"""edgecodec.export."""
