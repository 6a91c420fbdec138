"""Study datasets: pure Python/NumPy, deterministic from seeds, identical in every process."""
