"""The gRPC API's CityService: its servicer (``rpc.py``, start here), tokens and roles,
argument checks, status codes, the encoded-answer cache and ClassifyImage.
"""
