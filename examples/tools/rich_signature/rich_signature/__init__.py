"""A tool whose signature uses every common kind of input."""
