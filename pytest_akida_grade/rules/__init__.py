"""Pure rules over layer specs: the design space and the Akida 1.0 constraints."""
