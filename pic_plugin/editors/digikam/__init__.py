"""digiKam: version histories, tags, and its database."""
