"""The trusted side: every figure comes from a process that never imports a submission."""
