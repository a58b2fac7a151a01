"""Stage 2b — plan: what `dvc repro` trains on this machine within plan.budget_minutes. It measures
this machine's speed for each candidate (cached per machine and recipe, plan/speeds.py), prices
the whole run (plan/cost.py) and picks the most accurate candidate that fits (plan/choose.py)."""
