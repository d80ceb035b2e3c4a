"""polyinstruct.train"""
