"""Data layer: ACDC-layout I/O, the phantom generator, preprocessing and cardiac biomarkers."""
