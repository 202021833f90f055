"""The client side of the ``sightline`` command, apart from the server: channels (TLS, API key), the video
stream client and drawing results on images. It imports the generated stubs and ``postprocess`` types only,
never the server's use cases."""
