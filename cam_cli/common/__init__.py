"""Jobs every side of the tool shares, each implemented once: atomic writes, finding and
decoding images, the device and precision policy."""
