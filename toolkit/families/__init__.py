"""Codec families: one folder each, registered by one row in edgecodec.zoo.FAMILIES."""
