"""The only SSH code: persistent connections, fan-out, command builders and output parsers."""
