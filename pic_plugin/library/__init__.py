"""The photographer's library: catalog, scanning, the per-photo pipeline, batch, harvest and the watcher."""
