"""Workstation training for masked faces (issue 14 §2): `models/train`."""
