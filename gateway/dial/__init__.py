"""`voicegate dial`: a built-in SIP caller that calls the running gateway (see command.py)."""
