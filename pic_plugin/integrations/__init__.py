"""The editors' front ends talking to pic: darktable's Lua plugin planning, digiKam's BQM script."""
