"""The development harness: throwaway brokers, PostgreSQL clusters, RTSP cameras and a
simulated fleet for tests, benchmarks and the demo. Production code never imports it.
"""
