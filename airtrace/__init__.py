"""airtrace: the command line and the whole-system demo that ties the packages together.

``gateway``, ``cloud``, ``protocols`` and ``firmware_sim`` are the product's packages; this
small one only holds what spans them (the ``airtrace`` console script, the embedded broker
and the demo), so ``gateway`` and ``cloud`` never need to import each other.
"""

__version__ = "0.1.0"
