"""Thin job entrypoints that wire the packages together (``python -m ray_apps.<job>``) and the
``stockray`` console command. Nothing imports ``ray_apps``.
"""
