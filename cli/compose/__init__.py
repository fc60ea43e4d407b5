"""Compose files on Bicycle (`bicycle.py deploy -f`): load (YAML, .env,
interpolation, the Compose schema), translate (to service bodies), deploy
(plan and apply through the API)."""
