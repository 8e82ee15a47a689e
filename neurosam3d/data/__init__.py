"""Data layer: dataset adapters, per-class label trees and Parquet manifests."""
