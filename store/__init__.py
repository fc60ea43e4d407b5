"""The only TinyDB code: the desired state behind one lock, written atomically."""
