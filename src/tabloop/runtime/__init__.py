"""What loading and predicting need, and nothing else: the feature contract, the fitted preprocessing, the network,
its NumPy inference path, the bundle and the MLflow pyfunc flavour. A registered model ships this package only
(with ``tabloop/__init__.py`` and ``tabloop/errors.py``); it imports nothing else from ``tabloop``.
"""
