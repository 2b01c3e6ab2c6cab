-- Romanian VIPs who signed up since 2018.
SELECT *
FROM vip
WHERE country = 'RO'
  AND signup_date >= DATE '2018-01-01'
