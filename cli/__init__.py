"""Helpers of the command line: the API client and table printing."""
