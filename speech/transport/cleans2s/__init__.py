"""CleanS2S's front end talking to Parley unchanged (``--cleans2s_compat``): its two sockets, paired."""
