"""The untrusted side: student code runs only here, in a sandbox, and hands over files."""
