from importlib.metadata import PackageNotFoundError, version

try:
    SDK_VERSION = version("arkor")
except PackageNotFoundError:  # running from a source tree without an install
    SDK_VERSION = "0.0.0-dev"
