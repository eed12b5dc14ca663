"""Training data: loading datasets into (prompt, response) rows, subsets and mixes; judge prompt sets; the
instruction template."""
