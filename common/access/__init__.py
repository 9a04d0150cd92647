"""Who may do what: update and admin tokens, bearer keys, nonces, server secrets, and
the boundary decoder every input passes before anything is stored."""
