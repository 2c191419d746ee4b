print("squisher")
