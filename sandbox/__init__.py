"""A local cluster of real nodes on loopback: per node one dockerd, one sshd and one user.

Entry points live in `sandbox.cluster` (`up`, `down`, `status`, `engines`).
"""
