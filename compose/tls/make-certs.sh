#!/bin/sh
# Makes, once, the deployment's TLS material in /tls (a volume): a CA, a PKCS12
# keystore per Kafka node signed by it (names kafka-N and localhost), and the CA
# as PEM for clients (SYNCBUS_CA_FILE). Runs in the Kafka image, which has keytool.
set -eu
cd /tls
[ -f ca.pem ] && exit 0
: "${TLS_PASSWORD:?the keystore password (SYNCBUS_ADMIN_PASSWORD) is not set}"
keytool -genkeypair -alias ca -keyalg RSA -keysize 2048 -validity 825 -dname "CN=syncbus CA" \
  -ext bc:c -keystore ca.p12 -storetype PKCS12 -storepass "$TLS_PASSWORD"
keytool -exportcert -rfc -alias ca -keystore ca.p12 -storepass "$TLS_PASSWORD" > ca.pem
for n in 1 2 3; do
  keytool -genkeypair -alias kafka -keyalg RSA -keysize 2048 -validity 825 \
    -dname "CN=kafka-$n" -keystore "kafka-$n.p12" -storetype PKCS12 -storepass "$TLS_PASSWORD"
  keytool -certreq -alias kafka -keystore "kafka-$n.p12" -storepass "$TLS_PASSWORD" \
    -file "kafka-$n.csr"
  keytool -gencert -alias ca -keystore ca.p12 -storepass "$TLS_PASSWORD" -validity 825 \
    -ext "SAN=dns:kafka-$n,dns:localhost" -infile "kafka-$n.csr" -outfile "kafka-$n.crt" -rfc
  keytool -importcert -noprompt -alias ca -file ca.pem -keystore "kafka-$n.p12" \
    -storepass "$TLS_PASSWORD"
  keytool -importcert -alias kafka -file "kafka-$n.crt" -keystore "kafka-$n.p12" \
    -storepass "$TLS_PASSWORD"
done
rm -f ./*.csr ./*.crt
chmod 600 ./*.p12
