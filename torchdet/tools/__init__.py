"""Command-line tools as importable functions (Detectron2's ``tools/`` scripts): each module has
``get_parser()``, ``main(args)`` and ``invoke_main(argv)``; ``torchdet <subcommand>`` runs them.
"""
