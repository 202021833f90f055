"""Sightline: image and video-stream recognition over gRPC, on NVIDIA Triton."""
