"""foldserve: a ResNet inference service that simplifies networks algebraically before serving them."""

__version__ = "0.1.0"
