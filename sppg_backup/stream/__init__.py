"""Byte-stream stages: compress, encrypt, hash, count, pack and unpack, safe tar extraction."""
