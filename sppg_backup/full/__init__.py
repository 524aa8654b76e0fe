"""The full-system set: database, uploads, configuration, application folder and images as one backup."""
