"""socketlab: a network traffic lab in one process.

Trio nurseries run TCP and UDP listeners and traffic runs, and a Quart-Trio dashboard served
by Hypercorn's trio worker on the same loop shows every live connection.
"""

__version__ = "0.1.0"
