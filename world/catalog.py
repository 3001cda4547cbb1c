"""Real retail vocabulary for the simulated world: brands, their domains, brand groups, categories.

A pretrained LLM knows these names (Nike sells running shoes, Sephora sells makeup), so its world
knowledge has something to work with; the generated long tail it cannot know. Each curated brand:
(name, domain, brand_group, category path, aliases, popularity weight).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Brand:
    name: str  # display name the LLM sees
    domain: str  # web domain its URLs use
    group: str  # parent company; several brands can share one
    category: str  # '>'-separated category path
    aliases: tuple[str, ...] = ()  # other spellings users and LLMs write
    weight: float = 1.0  # relative global popularity


# Leaf category -> product nouns used in item titles and searches.
PRODUCTS: dict[str, tuple[str, ...]] = {
    "Apparel > Athletic": ("running shoes", "leggings", "sports bra", "training shorts", "track jacket", "sneakers"),
    "Apparel > Casual": ("denim jacket", "straight leg jeans", "linen shirt", "crewneck sweater", "midi dress", "chinos"),
    "Apparel > Outdoor": ("rain jacket", "hiking boots", "fleece pullover", "puffer vest", "trail backpack", "down parka"),
    "Beauty > Makeup": ("lipstick", "mascara", "foundation", "eyeshadow palette", "setting spray", "blush"),
    "Beauty > Skincare": ("moisturizer", "vitamin c serum", "cleanser", "retinol cream", "sunscreen spf 50", "eye cream"),
    "Home > Furniture": ("sectional sofa", "dining table", "accent chair", "platform bed", "bookshelf", "coffee table"),
    "Home > Kitchen": ("dutch oven", "stand mixer", "chef knife", "nonstick pan", "blender", "espresso machine"),
    "Home > Decor": ("throw pillow", "area rug", "wall art", "table lamp", "scented candle", "wall mirror"),
    "Electronics > Devices": ("wireless earbuds", "laptop", "smartwatch", "noise cancelling headphones", "tablet", "charger"),
    "Baby & Kids > Gear": ("baby stroller", "car seat", "toddler pajamas", "play mat", "high chair", "crib sheets"),
    "Pets > Supplies": ("dog food", "cat litter", "chew toys", "dog bed", "cat tree", "pet carrier"),
    "Food & Wellness > Grocery": ("meal kit", "protein powder", "collagen peptides", "organic snacks", "cold brew", "vitamins"),
    "Accessories > Jewelry & Bags": ("gold hoop earrings", "leather tote", "crossbody bag", "charm bracelet", "wallet", "watch"),
    "Travel > Lodging": ("beach house rental", "hotel deals", "cabin getaway", "city break", "resort package", "vacation rental"),
    "Department Stores > General": ("gift card", "home essentials", "kids clothes", "bedding set", "bath towels", "storage bins"),
}
ADJECTIVES: tuple[str, ...] = (
    "black", "white", "navy", "classic", "organic", "lightweight", "oversized", "vintage", "minimalist",
    "waterproof", "boho", "modern", "cozy", "slim", "ceramic", "linen", "recycled", "cotton",
)

_B = Brand
BRANDS: tuple[Brand, ...] = (
    # Apparel > Athletic
    _B("Nike", "nike.com", "Nike Inc", "Apparel > Athletic", ("Nike Inc",), 10),
    _B("Jordan", "jordan.com", "Nike Inc", "Apparel > Athletic", ("Air Jordan",), 4),
    _B("Converse", "converse.com", "Nike Inc", "Apparel > Athletic", (), 3),
    _B("Adidas", "adidas.com", "Adidas", "Apparel > Athletic", ("adidas",), 8),
    _B("Under Armour", "underarmour.com", "Under Armour", "Apparel > Athletic", ("UA",), 4),
    _B("Lululemon", "lululemon.com", "Lululemon", "Apparel > Athletic", ("lululemon athletica",), 7),
    _B("Puma", "puma.com", "Puma", "Apparel > Athletic", (), 3),
    _B("New Balance", "newbalance.com", "New Balance", "Apparel > Athletic", (), 4),
    _B("Athleta", "athleta.com", "Gap Inc", "Apparel > Athletic", (), 3),
    _B("Hoka", "hoka.com", "Deckers", "Apparel > Athletic", ("HOKA ONE ONE",), 3),
    _B("Brooks Running", "brooksrunning.com", "Berkshire Hathaway", "Apparel > Athletic", ("Brooks",), 2),
    _B("ASICS", "asics.com", "ASICS", "Apparel > Athletic", (), 2),
    _B("Gymshark", "gymshark.com", "Gymshark", "Apparel > Athletic", (), 2),
    # Apparel > Casual
    _B("Gap", "gap.com", "Gap Inc", "Apparel > Casual", (), 5),
    _B("Old Navy", "oldnavy.com", "Gap Inc", "Apparel > Casual", (), 6),
    _B("Banana Republic", "bananarepublic.com", "Gap Inc", "Apparel > Casual", (), 3),
    _B("Uniqlo", "uniqlo.com", "Fast Retailing", "Apparel > Casual", (), 5),
    _B("Zara", "zara.com", "Inditex", "Apparel > Casual", (), 6),
    _B("Pull&Bear", "pullandbear.com", "Inditex", "Apparel > Casual", ("Pull and Bear",), 1.5),
    _B("H&M", "hm.com", "H&M Group", "Apparel > Casual", ("H and M", "HM"), 6),
    _B("COS", "cos.com", "H&M Group", "Apparel > Casual", (), 1.5),
    _B("Levi's", "levi.com", "Levi Strauss & Co.", "Apparel > Casual", ("Levis", "Levi Strauss"), 4),
    _B("American Eagle", "ae.com", "American Eagle Outfitters", "Apparel > Casual", ("AE",), 4),
    _B("Aerie", "aerie.com", "American Eagle Outfitters", "Apparel > Casual", (), 2),
    _B("Abercrombie & Fitch", "abercrombie.com", "Abercrombie & Fitch Co.", "Apparel > Casual", ("Abercrombie",), 3),
    _B("Hollister", "hollisterco.com", "Abercrombie & Fitch Co.", "Apparel > Casual", (), 2),
    _B("J.Crew", "jcrew.com", "J.Crew Group", "Apparel > Casual", ("J Crew",), 3),
    _B("Madewell", "madewell.com", "J.Crew Group", "Apparel > Casual", (), 3),
    _B("Urban Outfitters", "urbanoutfitters.com", "URBN", "Apparel > Casual", (), 3),
    # Apparel > Outdoor
    _B("The North Face", "thenorthface.com", "VF Corporation", "Apparel > Outdoor", ("North Face", "TNF"), 5),
    _B("Timberland", "timberland.com", "VF Corporation", "Apparel > Outdoor", (), 3),
    _B("Vans", "vans.com", "VF Corporation", "Apparel > Outdoor", (), 3),
    _B("Patagonia", "patagonia.com", "Patagonia", "Apparel > Outdoor", (), 4),
    _B("Columbia", "columbia.com", "Columbia Sportswear", "Apparel > Outdoor", ("Columbia Sportswear",), 3),
    _B("REI", "rei.com", "REI Co-op", "Apparel > Outdoor", ("REI Co-op",), 3),
    _B("Arc'teryx", "arcteryx.com", "Amer Sports", "Apparel > Outdoor", ("Arcteryx",), 2),
    _B("L.L.Bean", "llbean.com", "L.L.Bean", "Apparel > Outdoor", ("LL Bean",), 2),
    # Beauty > Makeup
    _B("Sephora", "sephora.com", "LVMH", "Beauty > Makeup", (), 9),
    _B("Ulta Beauty", "ulta.com", "Ulta Beauty", "Beauty > Makeup", ("Ulta",), 8),
    _B("MAC Cosmetics", "maccosmetics.com", "Estee Lauder Companies", "Beauty > Makeup", ("MAC", "M·A·C"), 4),
    _B("Clinique", "clinique.com", "Estee Lauder Companies", "Beauty > Makeup", (), 3),
    _B("Estée Lauder", "esteelauder.com", "Estee Lauder Companies", "Beauty > Makeup", ("Estee Lauder",), 3),
    _B("Maybelline", "maybelline.com", "L'Oreal", "Beauty > Makeup", ("Maybelline New York",), 4),
    _B("Lancôme", "lancome-usa.com", "L'Oreal", "Beauty > Makeup", ("Lancome",), 2),
    _B("NYX Professional Makeup", "nyxcosmetics.com", "L'Oreal", "Beauty > Makeup", ("NYX",), 3),
    _B("Fenty Beauty", "fentybeauty.com", "LVMH", "Beauty > Makeup", ("Fenty",), 3),
    _B("Glossier", "glossier.com", "Glossier", "Beauty > Makeup", (), 3),
    _B("e.l.f. Cosmetics", "elfcosmetics.com", "e.l.f. Beauty", "Beauty > Makeup", ("elf", "e.l.f."), 3),
    _B("Charlotte Tilbury", "charlottetilbury.com", "Puig", "Beauty > Makeup", (), 2),
    # Beauty > Skincare
    _B("Kiehl's", "kiehls.com", "L'Oreal", "Beauty > Skincare", ("Kiehls",), 2),
    _B("CeraVe", "cerave.com", "L'Oreal", "Beauty > Skincare", (), 4),
    _B("The Ordinary", "theordinary.com", "Estee Lauder Companies", "Beauty > Skincare", ("Deciem",), 4),
    _B("Olay", "olay.com", "Procter & Gamble", "Beauty > Skincare", (), 3),
    _B("Neutrogena", "neutrogena.com", "Kenvue", "Beauty > Skincare", (), 3),
    _B("Drunk Elephant", "drunkelephant.com", "Shiseido", "Beauty > Skincare", (), 2),
    _B("Sol de Janeiro", "soldejaneiro.com", "L'Occitane Group", "Beauty > Skincare", (), 2),
    # Home > Furniture
    _B("IKEA", "ikea.com", "Ingka Group", "Home > Furniture", ("Ikea",), 8),
    _B("Wayfair", "wayfair.com", "Wayfair", "Home > Furniture", (), 7),
    _B("AllModern", "allmodern.com", "Wayfair", "Home > Furniture", ("All Modern",), 2),
    _B("Joss & Main", "jossandmain.com", "Wayfair", "Home > Furniture", ("Joss and Main",), 1.5),
    _B("West Elm", "westelm.com", "Williams-Sonoma Inc", "Home > Furniture", (), 4),
    _B("Pottery Barn", "potterybarn.com", "Williams-Sonoma Inc", "Home > Furniture", (), 4),
    _B("Crate & Barrel", "crateandbarrel.com", "Crate & Barrel", "Home > Furniture", ("Crate and Barrel",), 4),
    _B("CB2", "cb2.com", "Crate & Barrel", "Home > Furniture", (), 2),
    _B("Article", "article.com", "Article", "Home > Furniture", (), 2),
    _B("Ashley Furniture", "ashleyfurniture.com", "Ashley", "Home > Furniture", ("Ashley",), 3),
    _B("Room & Board", "roomandboard.com", "Room & Board", "Home > Furniture", ("Room and Board",), 1.5),
    # Home > Kitchen
    _B("Williams Sonoma", "williams-sonoma.com", "Williams-Sonoma Inc", "Home > Kitchen", ("Williams-Sonoma",), 4),
    _B("Le Creuset", "lecreuset.com", "Le Creuset", "Home > Kitchen", (), 3),
    _B("KitchenAid", "kitchenaid.com", "Whirlpool", "Home > Kitchen", ("Kitchen Aid",), 4),
    _B("Cuisinart", "cuisinart.com", "Conair", "Home > Kitchen", (), 3),
    _B("Our Place", "fromourplace.com", "Our Place", "Home > Kitchen", (), 2),
    _B("Sur La Table", "surlatable.com", "Sur La Table", "Home > Kitchen", (), 2),
    _B("OXO", "oxo.com", "Helen of Troy", "Home > Kitchen", (), 2),
    _B("Ninja", "ninjakitchen.com", "SharkNinja", "Home > Kitchen", ("Ninja Kitchen",), 4),
    # Home > Decor
    _B("Target", "target.com", "Target", "Home > Decor", (), 9),
    _B("Anthropologie", "anthropologie.com", "URBN", "Home > Decor", ("Anthro",), 4),
    _B("HomeGoods", "homegoods.com", "TJX", "Home > Decor", ("Home Goods",), 4),
    _B("Kirkland's", "kirklands.com", "Kirkland's", "Home > Decor", ("Kirklands",), 2),
    _B("Etsy", "etsy.com", "Etsy", "Home > Decor", (), 6),
    _B("Hobby Lobby", "hobbylobby.com", "Hobby Lobby", "Home > Decor", (), 3),
    _B("Michaels", "michaels.com", "Michaels", "Home > Decor", (), 3),
    # Electronics
    _B("Apple", "apple.com", "Apple", "Electronics > Devices", (), 8),
    _B("Samsung", "samsung.com", "Samsung", "Electronics > Devices", (), 5),
    _B("Best Buy", "bestbuy.com", "Best Buy", "Electronics > Devices", ("BestBuy",), 6),
    _B("Sony", "sony.com", "Sony", "Electronics > Devices", (), 3),
    _B("Bose", "bose.com", "Bose", "Electronics > Devices", (), 3),
    _B("Dyson", "dyson.com", "Dyson", "Electronics > Devices", (), 3),
    _B("Anker", "anker.com", "Anker", "Electronics > Devices", (), 2),
    _B("Logitech", "logitech.com", "Logitech", "Electronics > Devices", (), 2),
    # Baby & Kids
    _B("Carter's", "carters.com", "Carter's Inc", "Baby & Kids > Gear", ("Carters",), 4),
    _B("OshKosh B'gosh", "oshkosh.com", "Carter's Inc", "Baby & Kids > Gear", ("OshKosh",), 2),
    _B("Pottery Barn Kids", "potterybarnkids.com", "Williams-Sonoma Inc", "Baby & Kids > Gear", ("PB Kids",), 2),
    _B("Lovevery", "lovevery.com", "Lovevery", "Baby & Kids > Gear", (), 2),
    _B("Graco", "gracobaby.com", "Newell Brands", "Baby & Kids > Gear", (), 2),
    # Pets
    _B("Chewy", "chewy.com", "Chewy", "Pets > Supplies", (), 6),
    _B("Petco", "petco.com", "Petco", "Pets > Supplies", (), 4),
    _B("PetSmart", "petsmart.com", "PetSmart", "Pets > Supplies", ("Pet Smart",), 4),
    _B("BarkBox", "barkbox.com", "BARK", "Pets > Supplies", ("Bark",), 2),
    # Food & Wellness
    _B("Whole Foods Market", "wholefoodsmarket.com", "Amazon", "Food & Wellness > Grocery", ("Whole Foods",), 4),
    _B("HelloFresh", "hellofresh.com", "HelloFresh", "Food & Wellness > Grocery", ("Hello Fresh",), 4),
    _B("Thrive Market", "thrivemarket.com", "Thrive Market", "Food & Wellness > Grocery", (), 2),
    _B("Vital Proteins", "vitalproteins.com", "Nestle", "Food & Wellness > Grocery", (), 2),
    _B("Hims & Hers", "forhims.com", "Hims & Hers Health", "Food & Wellness > Grocery", ("Hims", "Hers"), 2),
    # Accessories
    _B("Pandora", "pandora.net", "Pandora", "Accessories > Jewelry & Bags", (), 4),
    _B("Mejuri", "mejuri.com", "Mejuri", "Accessories > Jewelry & Bags", (), 2),
    _B("Kendra Scott", "kendrascott.com", "Kendra Scott", "Accessories > Jewelry & Bags", (), 3),
    _B("Coach", "coach.com", "Tapestry", "Accessories > Jewelry & Bags", (), 4),
    _B("Kate Spade", "katespade.com", "Tapestry", "Accessories > Jewelry & Bags", ("Kate Spade New York",), 3),
    _B("Michael Kors", "michaelkors.com", "Capri Holdings", "Accessories > Jewelry & Bags", ("MK",), 3),
    _B("Fossil", "fossil.com", "Fossil Group", "Accessories > Jewelry & Bags", (), 2),
    # Travel
    _B("Airbnb", "airbnb.com", "Airbnb", "Travel > Lodging", (), 5),
    _B("Expedia", "expedia.com", "Expedia Group", "Travel > Lodging", (), 4),
    _B("Hotels.com", "hotels.com", "Expedia Group", "Travel > Lodging", ("Hotels com",), 3),
    _B("Vrbo", "vrbo.com", "Expedia Group", "Travel > Lodging", ("VRBO",), 2),
    _B("Booking.com", "booking.com", "Booking Holdings", "Travel > Lodging", ("Booking",), 4),
    # Department stores
    _B("Walmart", "walmart.com", "Walmart", "Department Stores > General", (), 10),
    _B("Amazon", "amazon.com", "Amazon", "Department Stores > General", (), 10),
    _B("Nordstrom", "nordstrom.com", "Nordstrom", "Department Stores > General", (), 4),
    _B("Macy's", "macys.com", "Macy's Inc", "Department Stores > General", ("Macys",), 5),
    _B("Kohl's", "kohls.com", "Kohl's", "Department Stores > General", ("Kohls",), 4),
    _B("Costco", "costco.com", "Costco", "Department Stores > General", (), 5),
)

# Word lists for the generated long tail: names an LLM cannot know.
LONG_TAIL_FIRST: tuple[str, ...] = (
    "Lumen", "Willow", "Marlo", "Juniper", "Cobalt", "Fable", "Hearth", "Sable", "Tidal", "Aster", "Birch",
    "Copper", "Dune", "Ember", "Fern", "Grove", "Harbor", "Indigo", "Kestrel", "Lark", "Meadow", "Nova",
    "Olive", "Pine", "Quill", "Rowan", "Sage", "Thistle", "Umber", "Vale", "Wren", "Yarrow", "Zephyr",
)
LONG_TAIL_SECOND: tuple[str, ...] = (
    "& Oak", "Goods", "Studio", "Supply Co", "House", "Atelier", "Collective", "Outfitters", "Labs",
    "& Co", "Market", "Threads", "Home", "Botanics", "Works", "Trading", "Provisions", "Craft",
)
