"""Demo data: two kirana stores and a realistic catalog stocked in each.

The catalog is generated from per-category tables of (brand, product line,
price per kg / litre / piece) crossed with the pack sizes that line is really
sold in, so it reads like a real shelf without being hand-typed SKU by SKU.
Everything is deterministic: the same code always yields the same catalog,
so tests, screenshots and support conversations can name concrete SKUs.

Run as `python -m kirana.seed`; seeding again is safe and never touches the
stock a store has already sold down.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import time
from typing import Any

import pymongo
from pymongo.database import Database

from kirana.db import bulk_update

STORES: list[dict[str, str]] = [
    {
        "_id": "store-blr-indiranagar",
        "name": "Sharma Kirana, Indiranagar",
        "city": "Bengaluru",
        "pincode": "560038",
    },
    {
        "_id": "store-pune-kothrud",
        "name": "Joshi General Stores, Kothrud",
        "city": "Pune",
        "pincode": "411038",
    },
]

# The catalog is modelled on this store's shelf; the others draw their own
# stock so that the stores visibly differ.
_FLAGSHIP_STORE_ID = STORES[0]["_id"]

# (brand, product line, SKU key of the line, rupees per kg | L | piece at the
# one-unit pack, pack sizes the line is sold in)
_Line = tuple[str, str, str, float, tuple[str, ...]]

_TABLE: dict[str, tuple[_Line, ...]] = {
    "Atta & Flours": (
        ("Aashirvaad", "Shudh Chakki Atta", "ATTA", 63, ("1 kg", "5 kg", "10 kg")),
        ("Aashirvaad", "Multigrain Atta", "MGATTA", 78, ("1 kg", "5 kg")),
        ("Aashirvaad", "Select Sharbati Atta", "SHARBATI", 76, ("5 kg", "10 kg")),
        ("Fortune", "Chakki Fresh Atta", "ATTA", 56, ("1 kg", "5 kg", "10 kg")),
        ("Pillsbury", "Chakki Fresh Atta", "ATTA", 58, ("5 kg", "10 kg")),
        ("Annapurna", "Farm Fresh Atta", "ATTA", 55, ("5 kg", "10 kg")),
        ("Rajdhani", "Besan", "BESAN", 120, ("500 g", "1 kg")),
        ("Tata Sampann", "100% Chana Dal Besan", "BESAN", 130, ("500 g", "1 kg")),
        ("Fortune", "Besan", "BESAN", 115, ("500 g", "1 kg")),
        ("Rajdhani", "Maida", "MAIDA", 52, ("500 g", "1 kg")),
        ("Rajdhani", "Sooji", "SOOJI", 56, ("500 g", "1 kg")),
        ("Rajdhani", "Rice Flour", "RICEFLOUR", 60, ("500 g", "1 kg")),
        ("24 Mantra Organic", "Ragi Flour", "RAGI", 90, ("500 g", "1 kg")),
        ("Organic Tattva", "Jowar Flour", "JOWAR", 110, ("500 g", "1 kg")),
    ),
    "Rice & Rice Products": (
        ("India Gate", "Basmati Rice Classic", "CLASSIC", 210, ("1 kg", "5 kg")),
        ("India Gate", "Basmati Rice Dubar", "DUBAR", 120, ("1 kg", "5 kg")),
        ("India Gate", "Basmati Rice Tibar", "TIBAR", 150, ("1 kg", "5 kg")),
        ("India Gate", "Feast Rozzana Basmati Rice", "ROZZANA", 95, ("1 kg", "5 kg")),
        ("Daawat", "Rozana Super Basmati Rice", "ROZANA", 105, ("1 kg", "5 kg")),
        ("Daawat", "Traditional Basmati Rice", "TRADITIONAL", 190, ("1 kg", "5 kg")),
        ("Daawat", "Biryani Basmati Rice", "BIRYANI", 230, ("1 kg",)),
        ("Fortune", "Biryani Special Basmati Rice", "BIRYANI", 180, ("1 kg", "5 kg")),
        ("Kohinoor", "Super Value Basmati Rice", "SUPERVALUE", 110, ("1 kg", "5 kg")),
        ("Sri Lalitha", "Sona Masoori Rice", "SONAMASOORI", 68, ("5 kg", "10 kg", "25 kg")),
        ("Sri Lalitha", "Idli Rice", "IDLIRICE", 55, ("1 kg", "5 kg")),
        ("Rajdhani", "Poha Thick", "POHA", 70, ("500 g", "1 kg")),
    ),
    "Dals & Pulses": (
        ("Tata Sampann", "Unpolished Toor Dal", "TOOR", 180, ("500 g", "1 kg", "2 kg")),
        ("Tata Sampann", "Unpolished Moong Dal", "MOONG", 150, ("500 g", "1 kg")),
        ("Tata Sampann", "Unpolished Chana Dal", "CHANA", 110, ("500 g", "1 kg")),
        ("Tata Sampann", "Unpolished Urad Dal", "URAD", 160, ("500 g", "1 kg")),
        ("Tata Sampann", "Unpolished Masoor Dal", "MASOOR", 120, ("500 g", "1 kg")),
        ("Tata Sampann", "Unpolished Green Moong Whole", "GREENMOONG", 140, ("500 g", "1 kg")),
        ("Fortune", "Toor Dal", "TOOR", 170, ("1 kg",)),
        ("24 Mantra Organic", "Toor Dal", "TOOR", 220, ("500 g", "1 kg")),
        ("Organic Tattva", "Moong Dal", "MOONG", 190, ("500 g", "1 kg")),
        ("Rajdhani", "Rajma Chitra", "RAJMA", 170, ("500 g", "1 kg")),
        ("Rajdhani", "Kabuli Chana", "KABULI", 150, ("500 g", "1 kg")),
        ("Rajdhani", "Kala Chana", "KALACHANA", 100, ("500 g", "1 kg")),
        ("Rajdhani", "Lobia", "LOBIA", 140, ("500 g",)),
    ),
    "Edible Oils & Ghee": (
        ("Fortune", "Sunlite Refined Sunflower Oil", "SUNFLOWER", 150, ("1 L", "5 L")),
        ("Fortune", "Kachi Ghani Mustard Oil", "MUSTARD", 175, ("1 L", "5 L")),
        ("Fortune", "Rice Bran Health Oil", "RICEBRAN", 155, ("1 L", "5 L")),
        ("Fortune", "Soyabean Oil", "SOYA", 140, ("1 L",)),
        ("Saffola", "Gold Refined Oil", "GOLD", 195, ("1 L", "5 L")),
        ("Saffola", "Tasty Refined Oil", "TASTY", 170, ("1 L", "5 L")),
        ("Gemini", "Refined Sunflower Oil", "SUNFLOWER", 145, ("1 L", "5 L")),
        ("Freedom", "Refined Sunflower Oil", "SUNFLOWER", 140, ("1 L", "5 L")),
        ("Dhara", "Kachi Ghani Mustard Oil", "MUSTARD", 170, ("1 L",)),
        ("Idhayam", "Gingelly Sesame Oil", "SESAME", 420, ("500 ml", "1 L")),
        ("Figaro", "Olive Oil", "OLIVE", 900, ("500 ml", "1 L")),
        ("Amul", "Pure Ghee", "GHEE", 620, ("500 ml", "1 L")),
        ("Patanjali", "Cow's Ghee", "GHEE", 640, ("500 ml", "1 L")),
        ("Mother Dairy", "Cow Ghee", "GHEE", 630, ("500 ml", "1 L")),
        ("Aashirvaad", "Svasti Pure Cow Ghee", "GHEE", 650, ("500 ml", "1 L")),
        ("Dalda", "Vanaspati", "VANASPATI", 160, ("1 kg",)),
    ),
    "Masalas & Spices": (
        ("MDH", "Deggi Mirch", "DEGGIMIRCH", 720, ("100 g", "500 g")),
        ("MDH", "Garam Masala", "GARAM", 780, ("100 g",)),
        ("MDH", "Chana Masala", "CHANA", 650, ("100 g",)),
        ("MDH", "Kitchen King Masala", "KITCHENKING", 680, ("100 g",)),
        ("MDH", "Kasoori Methi", "KASOORIMETHI", 1100, ("25 g", "100 g")),
        ("Everest", "Turmeric Powder", "TURMERIC", 280, ("100 g", "200 g", "500 g")),
        ("Everest", "Tikhalal Chilli Powder", "CHILLI", 400, ("100 g", "500 g")),
        ("Everest", "Garam Masala", "GARAM", 760, ("50 g", "100 g")),
        ("Everest", "Pav Bhaji Masala", "PAVBHAJI", 700, ("100 g",)),
        ("Everest", "Kitchen King Masala", "KITCHENKING", 680, ("100 g",)),
        ("Everest", "Meat Masala", "MEAT", 720, ("100 g",)),
        ("Catch", "Coriander Powder", "CORIANDER", 260, ("100 g", "200 g")),
        ("Catch", "Black Pepper Powder", "PEPPER", 1400, ("50 g", "100 g")),
        ("Catch", "Chat Masala", "CHAAT", 560, ("100 g",)),
        ("Catch", "Jeera Powder", "JEERA", 700, ("100 g",)),
        ("Tata Sampann", "Turmeric Powder", "TURMERIC", 300, ("100 g", "200 g")),
        ("Tata Sampann", "Chilli Powder", "CHILLI", 420, ("100 g", "200 g")),
        ("Tata Sampann", "Jeera Whole", "JEERA", 600, ("100 g", "200 g")),
        ("Eastern", "Sambar Powder", "SAMBAR", 500, ("100 g", "200 g")),
        ("MTR", "Rasam Powder", "RASAM", 480, ("100 g", "200 g")),
        ("MTR", "Sambar Powder", "SAMBAR", 460, ("100 g", "200 g")),
        ("Aachi", "Chicken Masala", "CHICKEN", 600, ("100 g",)),
    ),
    "Salt Sugar & Jaggery": (
        ("Tata Salt", "Iodised", "IODISED", 28, ("1 kg",)),
        ("Tata Salt", "Lite Low Sodium", "LITE", 48, ("1 kg",)),
        ("Tata Salt", "Rock Salt", "ROCK", 90, ("1 kg",)),
        ("Aashirvaad", "Iodised Salt", "SALT", 24, ("1 kg",)),
        ("Annapurna", "Iodised Salt", "SALT", 22, ("1 kg",)),
        ("Madhur", "Pure Sugar", "SUGAR", 50, ("1 kg", "5 kg")),
        ("Madhur", "Sugar Cubes", "CUBES", 180, ("500 g",)),
        ("Uttam", "Sulphurless Sugar", "SUGAR", 52, ("1 kg", "5 kg")),
        ("Dhampure", "Demerara Brown Sugar", "BROWN", 120, ("500 g", "1 kg")),
        ("24 Mantra Organic", "Jaggery", "JAGGERY", 110, ("500 g", "1 kg")),
        ("Patanjali", "Jaggery Powder", "JAGGERYPWD", 90, ("500 g", "1 kg")),
        ("Organic Tattva", "Jaggery Powder", "JAGGERYPWD", 130, ("500 g",)),
    ),
    "Tea & Coffee": (
        ("Tata Tea", "Premium", "PREMIUM", 500, ("250 g", "500 g", "1 kg")),
        ("Tata Tea", "Gold", "GOLD", 560, ("250 g", "500 g", "1 kg")),
        ("Tata Tea", "Agni", "AGNI", 380, ("250 g", "1 kg")),
        ("Red Label", "Tea", "TEA", 520, ("250 g", "500 g", "1 kg")),
        ("Red Label", "Natural Care Tea", "NATURALCARE", 560, ("250 g", "500 g")),
        ("Taj Mahal", "Tea", "TEA", 720, ("250 g", "500 g")),
        ("Wagh Bakri", "Premium Leaf Tea", "PREMIUM", 480, ("250 g", "500 g", "1 kg")),
        ("Society", "Leaf Tea", "LEAF", 500, ("250 g", "500 g")),
        ("Lipton", "Honey Lemon Green Tea Bags", "GREEN", 7, ("pack of 25", "pack of 100")),
        ("Tetley", "Green Tea Bags", "GREEN", 6, ("pack of 30",)),
        ("Bru", "Instant Coffee", "INSTANT", 2500, ("50 g", "100 g", "200 g")),
        ("Bru", "Green Label Filter Coffee", "FILTER", 800, ("200 g", "500 g")),
        ("Nescafe", "Classic Instant Coffee", "CLASSIC", 3400, ("50 g", "100 g", "200 g")),
        ("Nescafe", "Sunrise Instant Coffee", "SUNRISE", 2200, ("50 g", "100 g", "200 g")),
        ("Nescafe", "Gold Blend", "GOLD", 6000, ("50 g", "100 g")),
        ("Cothas", "Filter Coffee", "FILTER", 900, ("200 g", "500 g")),
    ),
    "Biscuits & Cookies": (
        ("Parle", "Parle-G Original Gluco Biscuits", "PARLEG", 90, ("250 g", "800 g")),
        ("Parle", "Hide & Seek Chocolate Chip Cookies", "HIDESEEK", 300, ("100 g", "200 g")),
        ("Parle", "Monaco Salted Crackers", "MONACO", 180, ("200 g",)),
        ("Parle", "Krackjack", "KRACKJACK", 160, ("200 g",)),
        ("Parle", "Marie Biscuits", "MARIE", 140, ("250 g",)),
        ("Britannia", "Good Day Cashew Cookies", "GOODDAY-CASHEW", 220, ("200 g", "600 g")),
        ("Britannia", "Good Day Butter Cookies", "GOODDAY-BUTTER", 190, ("200 g",)),
        ("Britannia", "Marie Gold", "MARIEGOLD", 150, ("250 g", "1 kg")),
        ("Britannia", "Bourbon", "BOURBON", 250, ("150 g",)),
        ("Britannia", "NutriChoice Digestive", "DIGESTIVE", 230, ("250 g", "1 kg")),
        ("Britannia", "50-50 Maska Chaska", "MASKACHASKA", 220, ("120 g",)),
        ("Britannia", "Milk Bikis", "MILKBIKIS", 160, ("200 g", "500 g")),
        ("Britannia", "Treat Jim Jam", "JIMJAM", 260, ("150 g",)),
        ("Sunfeast", "Dark Fantasy Choco Fills", "DARKFANTASY", 600, ("75 g", "300 g")),
        ("Sunfeast", "Mom's Magic Cashew & Almond", "MOMSMAGIC", 260, ("200 g", "600 g")),
        ("Sunfeast", "Marie Light", "MARIE", 150, ("250 g",)),
        ("Sunfeast", "Bounce Cream Biscuits", "BOUNCE", 230, ("200 g",)),
        ("Oreo", "Chocolate Cream Biscuits", "CHOCOLATE", 380, ("120 g", "300 g")),
        ("McVitie's", "Digestive", "DIGESTIVE", 300, ("250 g", "1 kg")),
        ("Unibic", "Choco Chip Cookies", "CHOCOCHIP", 400, ("150 g", "500 g")),
    ),
    "Snacks & Namkeen": (
        ("Haldiram's", "Aloo Bhujia", "ALOOBHUJIA", 260, ("200 g", "400 g", "1 kg")),
        ("Haldiram's", "Bhujia Sev", "BHUJIA", 250, ("200 g", "400 g", "1 kg")),
        ("Haldiram's", "Khatta Meetha", "KHATTAMEETHA", 240, ("200 g", "400 g")),
        ("Haldiram's", "Navrattan Mixture", "NAVRATTAN", 260, ("200 g", "400 g")),
        ("Haldiram's", "Moong Dal", "MOONGDAL", 280, ("200 g", "400 g")),
        ("Bikaji", "Bikaneri Bhujia", "BHUJIA", 240, ("200 g", "400 g", "1 kg")),
        ("Bikaji", "Khatta Meetha", "KHATTAMEETHA", 230, ("200 g", "400 g")),
        ("Lay's", "Classic Salted Potato Chips", "CLASSIC", 330, ("50 g", "90 g")),
        ("Lay's", "India's Magic Masala Potato Chips", "MAGICMASALA", 330, ("50 g", "90 g")),
        ("Kurkure", "Masala Munch", "MASALAMUNCH", 200, ("90 g", "180 g")),
        ("Bingo", "Mad Angles Achaari Masti", "MADANGLES", 250, ("70 g", "130 g")),
        ("Uncle Chipps", "Spicy Treat", "SPICY", 320, ("50 g",)),
        ("Balaji", "Simply Salted Wafers", "SALTED", 250, ("45 g", "135 g")),
        ("Act II", "Butter Lovers Instant Popcorn", "BUTTER", 400, ("70 g",)),
    ),
    "Dairy": (
        ("Amul", "Taaza Toned Milk", "TAAZA", 54, ("500 ml", "1 L")),
        ("Amul", "Gold Full Cream Milk", "GOLD", 66, ("500 ml", "1 L")),
        ("Mother Dairy", "Toned Milk", "TONED", 54, ("500 ml", "1 L")),
        ("Mother Dairy", "Full Cream Milk", "FULLCREAM", 66, ("500 ml", "1 L")),
        ("Nandini", "Toned Milk", "TONED", 44, ("500 ml", "1 L")),
        ("Amul", "Pasteurised Butter", "BUTTER", 560, ("100 g", "500 g")),
        ("Amul", "Cheese Slices", "CHEESESLICES", 720, ("200 g",)),
        ("Britannia", "Cheese Slices", "CHEESESLICES", 700, ("200 g",)),
        ("Amul", "Fresh Paneer", "PANEER", 420, ("200 g", "1 kg")),
        ("Mother Dairy", "Paneer", "PANEER", 430, ("200 g",)),
        ("Mother Dairy", "Classic Dahi", "DAHI", 85, ("400 g", "1 kg")),
        ("Amul", "Masti Dahi", "DAHI", 80, ("400 g", "1 kg")),
        ("Amul", "Fresh Cream", "CREAM", 280, ("250 ml", "1 L")),
        ("Amul", "Masti Spiced Buttermilk", "CHAAS", 60, ("200 ml", "1 L")),
        ("Amul", "Lassi", "LASSI", 110, ("200 ml",)),
        ("Amul", "Mithai Mate Sweetened Condensed Milk", "MITHAIMATE", 300, ("400 g",)),
        ("Nestle", "Milkmaid Sweetened Condensed Milk", "MILKMAID", 340, ("400 g",)),
    ),
    "Bread & Bakery": (
        ("Britannia", "White Bread", "WHITE", 100, ("400 g", "700 g")),
        ("Britannia", "100% Whole Wheat Bread", "WHOLEWHEAT", 140, ("400 g",)),
        ("Britannia", "Brown Bread", "BROWN", 120, ("400 g",)),
        ("Britannia", "Toastea Premium Bake Rusk", "RUSK", 200, ("300 g",)),
        ("Britannia", "Fruit Cake", "FRUITCAKE", 450, ("250 g",)),
        ("Britannia", "Cake Rusk", "CAKERUSK", 320, ("200 g",)),
        ("Modern", "Sandwich Bread", "SANDWICH", 110, ("400 g",)),
        ("Modern", "Multigrain Bread", "MULTIGRAIN", 150, ("400 g",)),
        ("Harvest Gold", "White Bread", "WHITE", 100, ("400 g", "700 g")),
        ("Harvest Gold", "Brown Bread", "BROWN", 125, ("400 g",)),
        ("Bonn", "High Fibre Brown Bread", "BROWN", 125, ("400 g",)),
        ("English Oven", "Burger Buns", "BURGERBUN", 10, ("pack of 4",)),
        ("English Oven", "Pav", "PAV", 5.5, ("pack of 6",)),
        ("English Oven", "Pizza Base", "PIZZABASE", 20, ("pack of 2",)),
    ),
    "Breakfast & Instant Food": (
        ("Maggi", "2-Minute Masala Noodles", "MASALA", 185, ("70 g", "280 g", "560 g")),
        ("Maggi", "Atta Noodles", "ATTA", 230, ("280 g",)),
        ("Sunfeast", "Yippee Magic Masala Noodles", "YIPPEE", 190, ("280 g",)),
        ("Top Ramen", "Curry Noodles", "CURRY", 190, ("280 g",)),
        ("Ching's Secret", "Schezwan Instant Noodles", "SCHEZWAN-NOODLES", 200, ("240 g",)),
        ("Knorr", "Classic Thick Tomato Soup", "TOMATO", 1000, ("53 g",)),
        ("Knorr", "Sweet Corn Veg Soup", "SWEETCORN", 1000, ("42 g",)),
        ("Kellogg's", "Corn Flakes Original", "CORNFLAKES", 380, ("250 g", "475 g", "875 g")),
        ("Kellogg's", "Chocos", "CHOCOS", 480, ("250 g", "375 g")),
        ("Kellogg's", "Muesli Fruit & Nut", "MUESLI", 700, ("500 g",)),
        ("Bagrry's", "Corn Flakes", "CORNFLAKES", 300, ("500 g",)),
        ("Saffola", "Masala Oats Classic Masala", "MASALAOATS", 460, ("40 g", "500 g")),
        ("Saffola", "Oats", "OATS", 180, ("1 kg",)),
        ("Quaker", "Oats", "OATS", 190, ("400 g", "1 kg")),
        ("MTR", "Rava Idli Mix", "RAVAIDLI", 260, ("200 g", "500 g")),
        ("MTR", "Dosa Mix", "DOSA", 260, ("200 g", "500 g")),
        ("MTR", "Ready to Eat Dal Makhani", "DALMAKHANI", 400, ("300 g",)),
        ("MTR", "Ready to Eat Rajma Masala", "RAJMA", 380, ("300 g",)),
        ("Gits", "Gulab Jamun Mix", "GULABJAMUN", 680, ("200 g",)),
    ),
    "Beverages": (
        ("Coca-Cola", "Coca-Cola Original Taste", "ORIGINAL", 55, ("750 ml", "1.25 L", "2.25 L")),
        ("Thums Up", "Thums Up Soft Drink", "SOFTDRINK", 55, ("750 ml", "1.25 L", "2.25 L")),
        ("Sprite", "Lemon Lime Soft Drink", "SOFTDRINK", 55, ("750 ml", "2.25 L")),
        ("Frooti", "Mango Drink", "MANGO", 45, ("200 ml", "600 ml", "1.2 L")),
        ("Maaza", "Mango Drink", "MANGO", 60, ("600 ml", "1.2 L")),
        ("Real", "Fruit Power Mixed Fruit Juice", "MIXEDFRUIT", 130, ("200 ml", "1 L")),
        ("Real", "Fruit Power Guava Juice", "GUAVA", 125, ("1 L",)),
        ("Tropicana", "100% Orange Juice", "ORANGE", 150, ("1 L",)),
        ("Paper Boat", "Aam Panna", "AAMPANNA", 130, ("250 ml",)),
        ("Tang", "Orange Instant Drink Mix", "ORANGE", 400, ("500 g",)),
        ("Cadbury", "Bournvita Health Drink", "BOURNVITA", 460, ("500 g", "1 kg")),
        ("Horlicks", "Classic Malt Health Drink", "CLASSIC", 500, ("500 g", "1 kg")),
        ("Boost", "Health Drink", "HEALTHDRINK", 500, ("500 g",)),
        ("Red Bull", "Energy Drink", "ENERGY", 500, ("250 ml",)),
        ("Bisleri", "Packaged Drinking Water", "WATER", 20, ("500 ml", "1 L", "5 L")),
        ("Kinley", "Packaged Drinking Water", "WATER", 20, ("1 L",)),
        ("Glucon-D", "Orange Instant Energy Drink", "ORANGE", 300, ("500 g",)),
    ),
    "Chocolates & Sweets": (
        ("Cadbury", "Dairy Milk", "DAIRYMILK", 850, ("24 g", "50 g", "110 g")),
        ("Cadbury", "Dairy Milk Silk", "SILK", 1100, ("60 g", "150 g")),
        ("Cadbury", "5 Star", "FIVESTAR", 500, ("22 g", "40 g")),
        ("Cadbury", "Perk", "PERK", 600, ("28 g",)),
        ("Cadbury", "Gems", "GEMS", 700, ("18 g",)),
        ("Cadbury", "Celebrations Premium Gift Pack", "CELEBRATIONS", 1300, ("118 g",)),
        ("Cadbury", "Bournville Dark Chocolate", "BOURNVILLE", 1300, ("80 g",)),
        ("Nestle", "KitKat", "KITKAT", 800, ("37 g",)),
        ("Nestle", "Munch", "MUNCH", 500, ("32 g",)),
        ("Amul", "Dark Chocolate 55%", "DARK55", 900, ("150 g",)),
        ("Haldiram's", "Soan Papdi", "SOANPAPDI", 260, ("250 g", "500 g")),
        ("Haldiram's", "Rasgulla", "RASGULLA", 180, ("1 kg",)),
        ("Haldiram's", "Gulab Jamun", "GULABJAMUN", 190, ("1 kg",)),
        ("Bikaji", "Rasgulla", "RASGULLA", 170, ("1 kg",)),
        ("Bikaji", "Soan Papdi", "SOANPAPDI", 240, ("250 g",)),
        ("Ferrero Rocher", "Ferrero Rocher Chocolates", "CHOCOLATES", 36, ("pack of 3", "pack of 16")),
        ("Pass Pass", "Pulse Kachcha Aam Candy", "PULSE", 1.1, ("pack of 50",)),
    ),
    "Dry Fruits": (
        ("Happilo", "California Almonds", "ALMONDS", 950, ("200 g", "500 g", "1 kg")),
        ("Happilo", "Whole Cashews", "CASHEWS", 1050, ("200 g", "500 g", "1 kg")),
        ("Happilo", "Afghani Black Raisins", "BLACKRAISINS", 600, ("200 g",)),
        ("Happilo", "Roasted Salted Pistachios", "PISTACHIOS", 1500, ("200 g",)),
        ("Happilo", "Walnut Kernels", "WALNUTS", 1400, ("200 g",)),
        ("Nutraj", "California Almonds", "ALMONDS", 900, ("500 g", "1 kg")),
        ("Nutraj", "Cashews W320", "CASHEWS", 1000, ("250 g", "500 g")),
        ("Nutraj", "Golden Raisins", "RAISINS", 450, ("250 g", "500 g")),
        ("Lion", "Seedless Dates", "DATES", 250, ("500 g", "1 kg")),
        ("Tulsi", "Anjeer Dried Figs", "ANJEER", 1400, ("200 g",)),
        ("Farmley", "Makhana Fox Nuts", "MAKHANA", 1200, ("100 g", "250 g")),
    ),
    "Pickles & Sauces": (
        ("Kissan", "Fresh Tomato Ketchup", "KETCHUP", 125, ("200 g", "500 g", "950 g")),
        ("Kissan", "Mixed Fruit Jam", "JAM", 330, ("200 g", "500 g")),
        ("Maggi", "Rich Tomato Ketchup", "KETCHUP", 130, ("500 g", "1 kg")),
        ("Maggi", "Hot & Sweet Tomato Chilli Sauce", "HOTSWEET", 150, ("500 g", "1 kg")),
        ("Mother's Recipe", "Mango Pickle", "MANGO", 300, ("300 g", "500 g")),
        ("Mother's Recipe", "Lime Pickle", "LIME", 280, ("300 g", "500 g")),
        ("Mother's Recipe", "Mixed Pickle", "MIXED", 290, ("300 g", "500 g")),
        ("Priya", "Avakaya Mango Pickle", "AVAKAYA", 320, ("300 g", "1 kg")),
        ("Nilon's", "Mango Pickle", "MANGO", 260, ("400 g",)),
        ("Ching's Secret", "Dark Soy Sauce", "SOY", 200, ("200 g",)),
        ("Ching's Secret", "Green Chilli Sauce", "GREENCHILLI", 180, ("200 g",)),
        ("Ching's Secret", "Schezwan Chutney", "SCHEZWAN", 400, ("250 g",)),
        ("Veeba", "Eggless Mayonnaise", "MAYO", 350, ("250 g",)),
        ("Del Monte", "Tomato Ketchup", "KETCHUP", 130, ("900 g",)),
        ("Smith & Jones", "Ginger Garlic Paste", "GINGERGARLIC", 250, ("200 g",)),
    ),
    "Personal Care": (
        ("Colgate", "Strong Teeth Toothpaste", "STRONGTEETH", 480, ("100 g", "200 g", "300 g")),
        ("Colgate", "MaxFresh Gel Toothpaste", "MAXFRESH", 700, ("150 g",)),
        ("Colgate", "ZigZag Toothbrush", "ZIGZAG", 30, ("pack of 4",)),
        ("Pepsodent", "Germicheck Toothpaste", "GERMICHECK", 400, ("150 g",)),
        ("Dabur", "Red Toothpaste", "REDPASTE", 450, ("100 g", "200 g")),
        ("Patanjali", "Dant Kanti Toothpaste", "DANTKANTI", 420, ("100 g", "200 g")),
        ("Lux", "Soft Touch Soap", "SOFTTOUCH", 40, ("pack of 4",)),
        ("Lifebuoy", "Total 10 Soap", "TOTAL10", 30, ("pack of 4",)),
        ("Dettol", "Original Soap", "SOAP", 50, ("pack of 4",)),
        ("Santoor", "Sandal & Turmeric Soap", "SANDAL", 40, ("pack of 4",)),
        ("Medimix", "Ayurvedic Classic 18 Herbs Soap", "CLASSIC", 42, ("pack of 3",)),
        ("Dove", "Cream Beauty Bathing Bar", "BATHINGBAR", 60, ("pack of 3",)),
        ("Parachute", "100% Pure Coconut Oil", "COCONUT", 390, ("100 ml", "250 ml", "500 ml", "1 L")),
        ("Dabur", "Amla Hair Oil", "AMLA", 450, ("100 ml", "275 ml")),
        ("Bajaj", "Almond Drops Hair Oil", "ALMONDDROPS", 700, ("100 ml", "200 ml")),
        ("Clinic Plus", "Strength & Shine Shampoo", "SHAMPOO", 520, ("175 ml", "355 ml")),
        ("Head & Shoulders", "Anti-Dandruff Shampoo", "ANTIDANDRUFF", 900, ("180 ml", "340 ml")),
        ("Sunsilk", "Black Shine Shampoo", "BLACKSHINE", 600, ("180 ml", "340 ml")),
        ("Nivea", "Soft Light Moisturising Cream", "SOFT", 2000, ("50 ml", "100 ml", "200 ml")),
        ("Vaseline", "Intensive Care Deep Restore Lotion", "DEEPRESTORE", 1000, ("100 ml", "400 ml")),
        ("Gillette", "Guard Razor", "GUARD", 30, ("1 pc",)),
        ("Whisper", "Ultra Clean Sanitary Pads XL", "ULTRAXL", 11, ("pack of 15", "pack of 30")),
        ("Stayfree", "Secure XL Sanitary Pads", "SECUREXL", 8, ("pack of 20",)),
        ("Himalaya", "Purifying Neem Face Wash", "NEEMFACEWASH", 1300, ("50 ml", "100 ml", "150 ml")),
        ("Boroline", "Antiseptic Ayurvedic Cream", "ANTISEPTIC", 1800, ("20 g", "40 g")),
        ("Dettol", "Antiseptic Liquid", "ANTISEPTIC", 600, ("125 ml", "250 ml", "550 ml")),
    ),
    "Household Cleaning": (
        ("Surf Excel", "Easy Wash Detergent Powder", "EASYWASH", 140, ("500 g", "1 kg", "3 kg")),
        ("Surf Excel", "Matic Top Load Liquid Detergent", "MATIC-TL", 230, ("1 L", "2 L")),
        ("Ariel", "Matic Front Load Detergent Powder", "MATIC-FL", 300, ("1 kg", "2 kg")),
        ("Tide", "Plus Double Power Detergent Powder", "DOUBLEPOWER", 110, ("1 kg", "4 kg")),
        ("Rin", "Advanced Detergent Powder", "ADVANCED", 100, ("1 kg",)),
        ("Ghadi", "Detergent Powder", "POWDER", 65, ("1 kg", "4 kg")),
        ("Wheel", "Active 2 in 1 Detergent Powder", "ACTIVE", 70, ("1 kg",)),
        ("Vim", "Dishwash Bar", "BAR", 100, ("300 g",)),
        ("Vim", "Lemon Dishwash Liquid Gel", "GEL", 220, ("250 ml", "500 ml", "750 ml")),
        ("Pril", "Lime Dishwash Liquid", "LIME", 200, ("500 ml",)),
        ("Lizol", "Citrus Disinfectant Floor Cleaner", "CITRUS", 200, ("1 L", "2 L")),
        ("Lizol", "Floral Disinfectant Floor Cleaner", "FLORAL", 200, ("500 ml", "1 L")),
        ("Harpic", "Power Plus Toilet Cleaner Original", "POWERPLUS", 210, ("500 ml", "1 L")),
        ("Colin", "Glass & Surface Cleaner", "GLASS", 260, ("500 ml",)),
        ("Domex", "Disinfectant Toilet Cleaner", "TOILET", 180, ("500 ml", "1 L")),
        ("Good Knight", "Gold Flash Liquid Refill", "GOLDFLASH", 80, ("1 pc", "pack of 2")),
        ("All Out", "Ultra Liquid Refill", "ULTRA", 75, ("1 pc",)),
        ("Hit", "Cockroach Killer Spray", "COCKROACH", 900, ("200 ml", "400 ml")),
        ("Odonil", "Air Freshener Block", "BLOCK", 1000, ("50 g",)),
        ("Scotch-Brite", "Scrub Pad", "SCRUBPAD", 15, ("pack of 3", "pack of 6")),
        ("Comfort", "After Wash Fabric Conditioner", "CONDITIONER", 230, ("200 ml", "860 ml")),
        ("Gala", "Floor Wiper", "WIPER", 150, ("1 pc",)),
    ),
    "Baby Care": (
        ("Pampers", "All Round Protection Pants Medium", "PANTS-M", 14, ("pack of 20", "pack of 56")),
        ("Pampers", "All Round Protection Pants Large", "PANTS-L", 15, ("pack of 20", "pack of 56")),
        ("Huggies", "Wonder Pants Medium", "PANTS-M", 13, ("pack of 20", "pack of 56")),
        ("Huggies", "Wonder Pants Large", "PANTS-L", 14, ("pack of 20", "pack of 56")),
        ("Huggies", "Wonder Pants XL", "PANTS-XL", 15, ("pack of 20", "pack of 56")),
        ("MamyPoko", "Pants Extra Absorb Medium", "PANTS-M", 12, ("pack of 20", "pack of 56")),
        ("MamyPoko", "Pants Extra Absorb Large", "PANTS-L", 13, ("pack of 20", "pack of 56")),
        ("Johnson's", "Baby Powder", "POWDER", 750, ("100 g", "200 g", "400 g")),
        ("Johnson's", "Baby Soap", "SOAP", 45, ("pack of 3",)),
        ("Johnson's", "Baby Oil", "OIL", 1200, ("100 ml", "200 ml")),
        ("Himalaya", "Gentle Baby Shampoo", "BABYSHAMPOO", 900, ("100 ml", "200 ml", "400 ml")),
        ("Himalaya", "Baby Lotion", "BABYLOTION", 900, ("100 ml", "200 ml")),
        ("Himalaya", "Gentle Baby Wipes", "BABYWIPES", 3, ("pack of 72",)),
        ("Nestle", "Cerelac Wheat Apple", "CERELAC-WA", 900, ("300 g",)),
        ("Nestle", "Cerelac Multigrain Dal Veg", "CERELAC-MDV", 950, ("300 g",)),
        ("Nestle", "Lactogen 1 Infant Formula", "LACTOGEN1", 1050, ("400 g",)),
        ("Nestle", "NAN Pro 1 Infant Formula", "NANPRO1", 2000, ("400 g",)),
        ("Dabur", "Lal Tail Baby Massage Oil", "LALTAIL", 800, ("100 ml", "200 ml", "500 ml")),
    ),
    "Pooja Needs": (
        ("Cycle", "Three in One Agarbatti", "3IN1", 600, ("100 g", "250 g")),
        ("Zed Black", "Premium 3 in 1 Agarbatti", "3IN1", 500, ("100 g", "250 g")),
        ("Mangaldeep", "Sandal Agarbatti", "SANDAL", 550, ("100 g", "250 g")),
        ("Mangaldeep", "Puja Dhoop Sticks", "DHOOP", 2.5, ("pack of 20",)),
        ("Mangaldeep", "Cotton Wicks", "WICKS", 0.4, ("pack of 100",)),
        ("HEM", "Precious Chandan Agarbatti", "CHANDAN", 500, ("100 g",)),
        ("Patanjali", "Havan Samagri", "HAVAN", 300, ("200 g", "500 g")),
        ("Mangalam", "Camphor Tablets", "CAMPHOR", 1700, ("20 g", "50 g", "100 g")),
        ("Sri Sri Tattva", "Pooja Oil", "POOJAOIL", 160, ("500 ml", "1 L")),
    ),
}

# Bigger packs are cheaper per kg/L/piece; this exponent gives the usual
# 8-10% saving of a 5 kg bag over five 1 kg bags.
_PACK_DISCOUNT_EXPONENT = 0.06

_SIZE = re.compile(r"^(?:pack of (?P<pack>\d+)|(?P<qty>\d+(?:\.\d+)?) (?P<uom>kg|g|L|ml|pc))$")
SKU_PATTERN = re.compile(r"^[A-Z0-9-]+$")
SKU_MAX_LEN = 48


def _size(label: str) -> tuple[float, str]:
    """(quantity in kg | L | pieces, SKU suffix) for a pack size label."""
    found = _SIZE.match(label)
    if found is None:
        raise ValueError(f"unknown pack size {label!r}")
    if found["pack"]:
        return float(found["pack"]), f"PK{found['pack']}"
    qty = float(found["qty"])
    uom = found["uom"]
    if uom in ("g", "ml"):
        return qty / 1000, f"{found['qty']}{uom.upper()}"
    if uom == "pc":
        return qty, f"{found['qty']}PC"
    # SKUs cannot carry a decimal point, so 1.25 L becomes 1250ML.
    if qty.is_integer():
        return qty, f"{int(qty)}{uom.upper()}"
    small = "G" if uom == "kg" else "ML"
    return qty, f"{round(qty * 1000)}{small}"


def _code(text: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "-", text.upper().replace("'", "")).strip("-")


def _round_rupees(rupees: float) -> int:
    # MRPs printed on packs are whole rupees, and above ₹100 usually end in 0 or 5.
    if rupees < 100:
        return max(1, int(rupees + 0.5))
    return int(rupees / 5 + 0.5) * 5


def _draw_stock(rng: random.Random) -> int:
    roll = rng.random()
    # A few of each out of stock and running low, so the storefront and the
    # reorder views have something to show.
    if roll < 0.04:
        return 0
    if roll < 0.15:
        return rng.randint(1, 5)
    return rng.randint(6, 200)


def _product(category: str, line: _Line, size_label: str) -> dict[str, Any]:
    brand, product_line, line_code, rate, _ = line
    qty, size_code = _size(size_label)
    sku = f"{_code(brand)}-{line_code}-{size_code}"
    # Lines such as "Parle-G ..." or "Thums Up ..." already carry the brand.
    base = product_line if product_line.startswith(brand.split()[0]) else f"{brand} {product_line}"
    name = f"{base} ({size_label.capitalize()})" if size_label.startswith("pack") else f"{base} {size_label}"
    mrp = _round_rupees(rate * qty * qty**-_PACK_DISCOUNT_EXPONENT)
    # Seeding each product's randomness by its SKU keeps a product's price and
    # stock stable when lines are added to or removed from the tables.
    discount_pct = random.Random(f"price:{sku}").choice((0, 0, 0, 0, 2, 3, 5, 5, 8, 10))
    price = max(1, int(mrp * (100 - discount_pct) / 100 + 0.5))
    return {
        "sku": sku,
        "name": name,
        "brand": brand,
        "category": category,
        "unit": size_label,
        "price_paise": price * 100,
        "mrp_paise": mrp * 100,
        "stock": _draw_stock(random.Random(f"stock:{sku}")),
    }


def catalog() -> list[dict[str, Any]]:
    """Every product of the demo shelf, in table order; a fresh list each call."""
    products: list[dict[str, Any]] = []
    seen: set[str] = set()
    for category, lines in _TABLE.items():
        for line in lines:
            for size_label in line[4]:
                product = _product(category, line, size_label)
                sku = product["sku"]
                # The tables are edited by hand; fail loudly rather than let
                # an upsert silently merge two products into one document.
                if sku in seen or len(sku) > SKU_MAX_LEN or not SKU_PATTERN.match(sku):
                    raise ValueError(f"bad or duplicate SKU {sku!r}")
                seen.add(sku)
                products.append(product)
    return products


def store_stock(store_id: str, product: dict[str, Any]) -> int:
    """Opening stock of `product` in `store_id`."""
    if store_id == _FLAGSHIP_STORE_ID:
        return int(product["stock"])
    return _draw_stock(random.Random(f"stock:{store_id}:{product['sku']}"))


_BATCH = 500


def seed(db: Database, *, now_ms: int | None = None) -> dict[str, int]:
    """Upsert the stores and every catalog product into every store.

    Safe to re-run: descriptive fields and prices are refreshed, while stock
    and `created_at` are written only when a product is first inserted, so a
    re-seed never undoes sales. Returns counts; `inserted` is the number of
    product documents that did not exist before.
    """
    if now_ms is None:
        now_ms = time.time_ns() // 1_000_000
    created_at = dt.datetime.fromtimestamp(now_ms / 1000, tz=dt.UTC)

    store_ops = [
        pymongo.UpdateOne(
            {"_id": store["_id"]},
            {
                "$set": {k: v for k, v in store.items() if k != "_id"} | {"updated_at_ms": now_ms},
                "$setOnInsert": {"created_at": created_at},
            },
            upsert=True,
        )
        for store in STORES
    ]
    bulk_update(db["stores"], store_ops)

    products = db["products"]
    n_products = 0
    inserted = 0
    batch: list[pymongo.UpdateOne] = []
    items = catalog()
    for store in STORES:
        store_id = store["_id"]
        for item in items:
            described = {k: v for k, v in item.items() if k != "stock"}
            batch.append(
                pymongo.UpdateOne(
                    {"_id": f"{store_id}:{item['sku']}"},
                    {
                        "$set": {"store_id": store_id, **described, "updated_at_ms": now_ms},
                        "$setOnInsert": {
                            "stock": store_stock(store_id, item),
                            "created_at": created_at,
                        },
                    },
                    upsert=True,
                )
            )
            n_products += 1
            if len(batch) == _BATCH:
                inserted += bulk_update(products, batch).upserted
                batch = []
    if batch:
        inserted += bulk_update(products, batch).upserted
    return {"stores": len(STORES), "products": n_products, "inserted": inserted}


def main() -> int:
    from kirana import db

    database = db.database()
    db.ensure_indexes(database)
    counts = seed(database)
    print(f"seeded {counts['stores']} stores, {counts['products']} products ({counts['inserted']} new)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
