"""The built-in learners; importing this package registers them (`curate.train.learner.register`)."""

from curate.train.learners import boosting, fused, separate  # noqa: F401
