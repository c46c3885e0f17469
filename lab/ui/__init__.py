"""``lab ui``: a local web view of the steps and of each step's last run (issue #19).

The page draws the same run model the CLI prints (:mod:`lab.render.run_model`, saved per step
under ``$LAB_HOME/runs``); running a step from the page runs ``lab step N --json``.
"""
