"""The ``pic`` command: a thin click layer over ``pic_plugin``."""
