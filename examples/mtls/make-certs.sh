#!/bin/sh
# make-certs.sh makes, in the current directory, a test client CA, a
# certificate it issues to the client "billing" (SAN billing.example.com)
# and a self-signed certificate for the client "reports": what
# examples/mtls/Caddyfile registers. For trying the example only.
set -eu
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout ca.key -out ca.pem -days 365 -subj "/CN=Example client CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout billing.key -out billing.csr -subj "/CN=billing" 2>/dev/null
printf "subjectAltName=DNS:billing.example.com\nextendedKeyUsage=clientAuth\n" >billing.ext
openssl x509 -req -in billing.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 90 \
	-extfile billing.ext -out billing.pem 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout reports.key -out reports.pem -days 365 -subj "/CN=reports" 2>/dev/null
rm -f billing.csr billing.ext ca.srl
echo "made ca.pem, billing.pem/.key (issued by ca.pem), reports.pem/.key (self-signed)"
