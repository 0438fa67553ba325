"""pic: personalized image cropping. The library behind the ``pic`` command, the watcher and the editor plugins."""

__version__ = "0.1.0"
