"""Assets: raw data -> label trees and manifests -> model -> evaluation -> registry."""
