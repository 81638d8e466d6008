"""Thin napari layer: reader, writer, sample data and widgets over the GUI-free core."""
