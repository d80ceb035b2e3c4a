"""polyinstruct.analysis"""
