"""GUI-free core of napari-unet: model, inference, I/O, training, queue and registry.

Nothing in this package imports Qt, napari or magicgui.
"""
