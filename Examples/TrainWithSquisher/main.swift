import Squisher
print("placeholder")
