// Replaced by the single-page app in the next commit.
