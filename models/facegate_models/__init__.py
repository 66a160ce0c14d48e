"""facegate model pipeline: fetch pinned packages, convert, quantise, write bundles."""
